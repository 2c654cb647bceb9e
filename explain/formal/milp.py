"""The MILP backend: the decision function as a mixed-integer program, solved by HiGHS.

The alternative to Z3 for input-level queries through ReLU networks: each ReLU becomes a
binary with big-M constraints whose M comes from interval bounds propagated from the
inputs' ranges (declared, or the training range -- widened to the explained row's own
value where that lies outside it, the input then being that value or within the range),
each comparison in a rule an indicator binary, and/or/not their standard linearisations,
a bool decision ``score > 0``, an int or enum decision one binary per value, the
residual's logits added to the scores.
``scipy.optimize.milp`` (HiGHS) then solves counterfactuals (minimum L1 change or fewest
changes), reasons and verification queries.

Soundness: comparisons between integer expressions are exact (a margin of 1); between
real expressions both sides are allowed at equality, so the program *over-approximates*
the decision function: when it says no input differs (a reason, a proof), none does.
A witness it finds may sit exactly on a threshold on the wrong side: every witness is
checked by running the decision function, and one that does not replay is asked again of
Z3, which is exact.

Scope: decisions that no hard constraint ties to others, table inputs with bounds,
networks of Linear/ReLU layers. Anything else is a clear ModelError naming it (use
``backend="z3"``).
"""

from __future__ import annotations

import time
from fractions import Fraction

from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import MISSING, not_false, z3_serialised

from ._milp_encoding import compile_decision
from ._milp_program import EPS, Lin, Program
from ._milp_queries import _decode, assumptions, closest_change, differs
from ._protocol import NO_WISHES, Backend, Problem, Wishes
from ._row import decision_on, row_state

__all__ = ["Lin", "MilpBackend", "Program", "compile_decision"]


class MilpProblem(Problem):
    """One row's decision as a mixed-integer program over the table inputs."""

    def __init__(self, model, batch, row: int, output: str, *, max_relus: int,
                 timeout: float):
        self.kb = kb = model.to_kb()
        self.output, self.level, self.timeout = output, "input", timeout
        self._where = (model, batch, row, max_relus)
        self._exact = None
        facts, self.decision = row_state(model, batch, row, output)
        self.facts = {n: v for n, v in facts.items() if kb.variables[n].role == "input"}
        # the residual is encoded from the inputs: the biases alone here
        self.comp = compile_decision(model, kb, model.bias_table(), max_relus=max_relus,
                                     row=self._row_values())

    def _row_values(self) -> dict:
        """The row's real and int inputs: the program ranges over them too."""
        return {n: v for n, v in self.facts.items() if v is not MISSING
                and isinstance(self.kb.variables[n].type, (A.RealType, A.IntType))}

    def differs(self, fixed: dict):
        witness = differs(self.comp, self.output, self.decision, fixed,
                          time_limit=self.timeout)
        if witness is None:
            return None       # the program over-approximates: no input differs
        if self._replays(witness):
            return witness
        # a witness on a threshold's wrong side: ask Z3, which is exact
        return self._exact_problem().differs(fixed)

    def _replays(self, witness: dict, target=None) -> bool:
        """Whether the decision function decides otherwise (``target``, where given) on
        the witness's inputs."""
        model, batch, row, _ = self._where
        got = decision_on(model, batch, row, self.output, witness)
        if target is not None:
            return got == target
        return got is not None and got != self.decision

    @z3_serialised
    def _exact_problem(self):
        if self._exact is None:
            import z3

            from .z3 import Z3Problem

            model, batch, row, max_relus = self._where
            exact = Z3Problem(model, batch, row, self.output, level="input",
                              max_relus=max_relus, timeout=self.timeout)
            # over the program's ranges: inputs declared without bounds within the
            # training range, as this problem's assumptions say (Z3 alone ranges over
            # every real) -- or at the row's own value, which may lie outside it
            rows = self._row_values()
            exact.background = list(exact.background) + [
                z3.Or(z3.And(exact.const(n) >= Fraction(lo), exact.const(n) <= Fraction(hi)),
                      exact.const(n) == Fraction(float(rows[n])))
                if n in rows and not lo <= float(rows[n]) <= hi else
                z3.And(exact.const(n) >= Fraction(lo), exact.const(n) <= Fraction(hi))
                for n, (lo, hi) in self.comp.assumed.items()]
            self._exact = exact
        return self._exact

    def closest(self, *, minimize: str, immutable, spreads: dict, wishes: Wishes = NO_WISHES):
        # searched in the inner program (a margin around real thresholds), so that the
        # change found replays; the over-approximating one says when none exists at all
        # ``timeout`` bounds the whole search, every program (and Z3) together
        deadline = time.monotonic() + self.timeout

        def left() -> float:
            return max(1e-3, deadline - time.monotonic())

        model, _, _, max_relus = self._where
        inner = compile_decision(model, self.kb, model.bias_table(), max_relus=max_relus,
                                 margin=EPS, row=self._row_values())
        found = closest_change(inner, self.output, self.decision, self.facts,
                               minimize=minimize, immutable=set(immutable), spreads=spreads,
                               time_limit=left(), wishes=wishes)
        if found is not None and not self._replays(found, wishes.target):
            # HiGHS' feasibility tolerance (1e-7) let a fact the change keeps, a hair off
            # a threshold (x = 2.75999999724 against x >= 2.76), count as over it, and
            # polishing moves only changed facts: which change works is Z3's to say
            exact = self._exact_problem()
            exact.timeout = left()
            return exact.closest(minimize=minimize, immutable=immutable, spreads=spreads,
                                 wishes=wishes)
        if found is None:
            found = closest_change(self.comp, self.output, self.decision, self.facts,
                                   minimize=minimize, immutable=set(immutable),
                                   spreads=spreads, time_limit=left(), wishes=wishes)
            if found is not None and not self._replays(found, wishes.target):
                # the over-approximation's change sits on a threshold (a score of exactly
                # 0, a real at equality): whether any change exists is Z3's to say, exactly
                exact = self._exact_problem()
                exact.timeout = left()
                found = exact.closest(minimize=minimize, immutable=immutable,
                                      spreads=spreads, wishes=wishes)
        return found

    def assumptions(self, fixed=()) -> tuple:
        return assumptions(self.comp, fixed)

    def why_none(self) -> str:
        """Why no input change flips a bool decision: the residual's logit bounds over
        the inputs' ranges against what the rules can add."""
        comp, output, decision = self.comp, self.output, self.decision
        if output not in comp.residual or not isinstance(decision, bool):
            return ""
        lo, hi = comp.p.bounds(comp.residual[output][0])
        bias = float(comp.bias.get(output, 0.0))
        swing = sum(abs(float(r.weight)) for r in comp.kb.rules_for(output))
        if (decision and lo + bias - swing > 0) or (not decision and hi + bias + swing <= 0):
            return (f"; the residual network alone decides this: its logit stays within "
                    f"[{lo:.3g}, {hi:.3g}] over the inputs' ranges, and the rules add at "
                    f"most {swing:g}")
        return ""


class MilpBackend(Backend):
    """HiGHS: the input level, table inputs bounded (or bounded by the training range),
    decisions no hard constraint ties together."""

    name = "milp"

    def problem(self, model, batch, row, output, *, level, max_relus, timeout) -> MilpProblem:
        if level != "input":
            raise ModelError("the MILP backend reasons at the input level (use "
                             "backend='z3' for level='concept')")
        return MilpProblem(model, batch, row, output, max_relus=max_relus, timeout=timeout)

    def refute(self, model, formula, *, level, max_relus, timeout):
        if level != "input":
            raise ModelError("the MILP backend verifies at the input level (use "
                             "backend='z3' for level='concept')")
        import pandas as pd

        from ._row import show

        kb = model.to_kb()
        comp = compile_decision(model, kb, model.bias_table(), max_relus=max_relus)
        rows = len(comp.p.rows)
        comp.p.add(comp.truth(not_false(kb, formula)), hi=0.0)   # known false
        try:
            x = comp.p.solve(None, time_limit=timeout)
        finally:
            del comp.p.rows[rows:]
        if x is None:
            return None, assumptions(comp)
        codes = _decode(comp, x)
        row = pd.DataFrame({n: [show(kb, n, c)] for n, c in codes.items()})
        return row, assumptions(comp)
