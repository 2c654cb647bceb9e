"""Hard constraints that cannot hold together, whatever the inputs and decisions."""

from __future__ import annotations

import z3

from greybox.errors import listed

from .._missing import not_false
from ._base import Analysis, Context, Finding, keep_partial


class Contradictions(Analysis):
    name = "contradiction"
    description = "hard constraints that contradict each other (a minimal conflicting set)"

    def run(self, ctx: Context) -> list[Finding]:
        hard = [c for c in ctx.kb.constraints.values() if c.hard]
        if not hard:
            return []
        solver = ctx.solver(constraints=False)
        terms = {c.name: ctx.enc.expr(not_false(ctx.kb, c.formula)) for c in hard}
        marks = {name: z3.Bool(f"__track_{i}") for i, name in enumerate(terms)}
        for name, term in terms.items():
            solver.add(z3.Implies(marks[name], term))
        findings = []
        active = list(terms)
        ctx.doing = "looking for hard constraints that contradict each other"
        with keep_partial(findings):
            self._search(ctx, solver, marks, active, findings)
        return findings

    def _search(self, ctx, solver, marks, active, findings):
        while active:
            result = ctx.check(solver, *[marks[n] for n in active])
            if result == z3.unknown:
                findings.append(ctx.undecided(self.name, "whether the constraints agree", solver))
                break
            if result == z3.sat:
                break
            core = [n for n in active if any(z3.eq(marks[n], m) for m in solver.unsat_core())]
            core = self._minimise(ctx, solver, marks, core)
            findings.append(Finding(
                self.name, "error",
                "hard constraints " + listed(core) + " cannot all hold (no input and "
                "decision satisfies them together)" if len(core) > 1 else
                f"hard constraint {core[0]} can never hold",
                tuple(core)))
            active = [n for n in active if n not in core]

    @staticmethod
    def _minimise(ctx, solver, marks, core):
        """Deletion-based minimisation: drop each member that is not needed."""
        needed = list(core)
        for name in list(core):
            trial = [n for n in needed if n != name]
            if trial and ctx.check(solver, *[marks[n] for n in trial]) == z3.unsat:
                needed = trial
        return needed
